"""The `geosleuth` command line: one short function per subcommand over the engine API."""
