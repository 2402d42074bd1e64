from svcnet.cli.main import run

run()
