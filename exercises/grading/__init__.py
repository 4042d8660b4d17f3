"""The exercises' grader: a harness that runs the student's file in a child process (harness.py and
its rooms, runner.py) and one module of checks per exercise (exN.py, found by catalogue.py)."""
