"""Developer and CI tools behind the command line: `pixgate lint --format github`,
`pixgate explain`, and the generated DSL reference (`python -m engine.tools.schemadoc`)."""
