"""The floor of labctl: the backend interface, chip types, envelope, errors, parameters."""
