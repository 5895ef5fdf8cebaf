"""What an answer looks like outside the engine: maps, wording, and case exports."""
