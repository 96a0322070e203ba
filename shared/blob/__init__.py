"""The blob edge: what to do with a blob (:mod:`.jobs`), the handler (:mod:`.pipeline`), the Functions trigger
(:mod:`.trigger`) and running it without a host (:mod:`.watch`)."""
