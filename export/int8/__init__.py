"""INT8 models after QAT: saving a QAT model or checkpoint as an INT8 inference directory (:mod:`.save`),
running it with oneDNN INT8 kernels (:mod:`.runtime`) and the INT8-vs-FP32 evaluation of record
(:mod:`.evaluate`). QAT *training* (fake-quant wrapping, parents, folding) stays in :mod:`training.quant`."""
