"""Response models, one module per resource. Shared by the API (response_model) and the UI client."""
