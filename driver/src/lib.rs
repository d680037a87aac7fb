//! synack-driver: moves frames between the network and the sans-IO `synack` engine.
