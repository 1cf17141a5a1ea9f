from talkmill.cli import app

app()
