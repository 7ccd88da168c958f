from evalsuite.cli import entry

entry()
