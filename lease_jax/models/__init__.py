"""Networks: the explainer supernet, the audience ResNet-18 and the evaluation networks."""
