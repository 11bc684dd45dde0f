"""livesight.tools: command-line tools that combine parts (a source, a backend, DTD) for one offline job."""
