"""kopf handlers. Importing this package registers them; each module is thin and delegates to
the reconciler, the builders and the clients."""

from infer_operator.handlers import inferenceservice, nodes, owned, pods, setup  # noqa: F401
