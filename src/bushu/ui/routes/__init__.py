"""The UI's API, one module per tab: models (and their try-it, SDK, bench, optimize, export), evaluations,
deployments, datasets, jobs (train, import); images (a data set's images: browse, relabel, delete, add)
and uploads (your own model file). Each module's ROUTES is a list of Starlette routes."""
