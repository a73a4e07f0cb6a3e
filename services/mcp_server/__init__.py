"""The agent tools over the Model Context Protocol: `naive mcp`.

A thin client of the Naive HTTP API, like the CLI (it reuses `services.cli.client.ApiClient`
and never touches the database). `schemas` describes the tools from the live model
catalog, `tools` implements them (cost checks, the session budget, idempotent retries,
waiting), `server` wires them to the `mcp` SDK's low-level server over stdio or
streamable HTTP.
"""
