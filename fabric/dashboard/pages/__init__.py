"""One module per page family; each adds its routes to the dashboard app."""
