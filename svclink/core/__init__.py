"""The pure core: every decision svclink makes, with no sockets, no sleeping and no clock reads."""
