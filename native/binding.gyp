{
  "targets": [
    {
      "target_name": "strand_native",
      "sources": ["strand_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "ldflags": ["-Wl,-z,now", "-Wl,-z,relro"]
    }
  ]
}
