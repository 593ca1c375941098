"""Internet-protocol arithmetic shared by every room (controller, ndo drivers): pure functions only.

It lives outside ``controller`` so that drivers, which must never import the controller, use the
same checksum code instead of a copy.
"""
