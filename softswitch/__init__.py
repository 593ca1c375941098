"""softswitch: an embedded P4 target that runs BMv2's compiled JSON and speaks P4Runtime."""
