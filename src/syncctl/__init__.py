"""syncctl: a reconciler for a crowdfunding campaign's five services."""

__version__ = "0.1.0"
