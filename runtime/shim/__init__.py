"""containerd shim v2 (io.containerd.pyrunc.v1)"""
