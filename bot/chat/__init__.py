"""The platform-neutral chat service: access, limits, engine calls, and what it keeps."""
