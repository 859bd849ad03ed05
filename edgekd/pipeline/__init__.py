"""`edgekd pipeline`: the whole toolchain in one resumable command.

settings (PipelineConfig: demo defaults, --config / --set), plan (the stages and their inputs), stages (the resumable
StageRunner), run (run_pipeline: runs the plan into an output folder and writes pipeline.json).
"""

from edgekd.pipeline.run import run_pipeline
from edgekd.pipeline.settings import PipelineConfig, load_pipeline_config

__all__ = ["PipelineConfig", "load_pipeline_config", "run_pipeline"]
