"""The reconciler: observe the services, plan what is missing, apply it, recover the rest."""
