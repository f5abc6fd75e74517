"""Example claims modules: what a researcher writes to verify a claim of their own (run with
``verify run --claims properties.examples.my_claims``). Not imported by ``import properties``."""
