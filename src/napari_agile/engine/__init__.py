"""The learning: the network, meta-training, one-step adaptation, uncertainty, thresholds."""
