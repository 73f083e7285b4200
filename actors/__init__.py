"""Ray actor classes of ray-orch: thin shells that hold state and call into the engine."""
