"""Platform guarantees: settings, HTTP operations, GraphQL limits, schema SDL, CLI, embedded serve."""
