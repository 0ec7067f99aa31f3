"""Deployment without training: template store, access (keys, scopes, limits), encoder (ONNX Runtime, or
torch when chosen), deployment (enroll / verify / identify) and the REST service. Importing any module here
pulls in no torch; only the torch encoder back-end imports the training stack, inside the call that needs it.
"""
