"""Reconciling one InferenceService: the pass (`reconciler`), its timing (`schedule`), and the pure
decisions it applies (`roles`: role labels and flips; `status`: counts and conditions)."""
