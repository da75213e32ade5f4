"""LiveDeployment: pure builders, and the operator against the emulated API with the TWS peer as gateway."""
