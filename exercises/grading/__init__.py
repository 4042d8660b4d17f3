"""The exercises' grader: a harness that runs the student's file in a child process
(harness.py, runner.py) and one module of checks per exercise (ex1.py to ex5.py)."""
