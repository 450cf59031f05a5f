"""Registry upkeep for InferenceServices: who is registered, releasing deleted pods, the sweep.

- `plans`: pure decisions (the registered set, what a pass registers or removes, what a sweep
  removes); they import the registry's data model, never a client;
- `actions`: multi-step registry operations over any client (confirmed deregistration, applying
  a sweep plan);
- `registrar`: one InferenceService's registry client and passes (sync, sweep, removing all);
- `releaser`: deleted pods, deregistered and released from their finalizer within a bound.
"""
