"""One Brain subclass per training method; all wiring in YAML."""
