"""A claims module that does not import."""

raise RuntimeError("this claims module is broken on purpose")
