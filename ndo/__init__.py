"""The driver boundary, shaped like the kernel's ``ndo_setup_tc(TC_SETUP_FT)``.

The controller speaks flows (``ndo.api``); a driver translates them into a target's language.
"""
