from vidprof.pipeline.cli import entry

entry()
