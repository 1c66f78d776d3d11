"""Speaker-profiling recipes on SpeechBrain: gender, age super-group and age sub-group."""

import logging as _logging

# SpeechBrain warns "torchvision is not available - cannot save figures" when its train_logger
# is imported; no recipe saves figures through it (matplotlib writes the plots): drop it
_logging.getLogger("speechbrain.utils.train_logger").addFilter(
    lambda record: "torchvision is not available" not in record.getMessage())
