from talkmill_engine.cli import app

app(prog_name="talkmill-engine")
