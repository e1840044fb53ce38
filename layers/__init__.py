"""The Lambda layer build: requirements plus the docker-free bundling that CDK runs at synth time."""
