"""The HTTP edge: the FastAPI app (:mod:`.app`), one router module per route group (``routes_*``), the bounded
upload reader (:mod:`.uploads`), problem documents (:mod:`.problems`) and shared OpenAPI models (:mod:`.models`)."""
