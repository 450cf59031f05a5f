"""What every hook into kopf shares: the error that says a hook cannot be installed."""

from __future__ import annotations


class Unavailable(Exception):
    """This kopf lacks what a hook relies on (a private name moved, a signature or a log line
    changed): the hook is not installed and kopf keeps its own behaviour. The message names what
    is missing."""


# The attribute set on whatever a hook replaced, so that installing twice wraps once.
MARK = "_infer_operator_hook"
