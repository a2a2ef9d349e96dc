"""The operator commands beyond reconcile, each a small module the CLI wires up."""
