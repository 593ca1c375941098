"""Subcommands of ``p4ft``; see ``controller.cli``."""
