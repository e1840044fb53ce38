"""Executors run a registered graph's compiled ASL: ``local`` (the embedded interpreter, in-process) and
``stepfunctions`` (AWS Step Functions). Both implement ``base.Executor``; import the one you need."""
