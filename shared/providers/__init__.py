"""Model providers: the interface (:mod:`.base`), the ``openai`` SDK one (:mod:`.openai_chat`), the offline
engine's (:mod:`.local`) and the choice between them (:mod:`.factory`)."""
