"""tb-attention: attention and query/key vectors of transformers in TensorBoard."""
from setuptools import setup

setup(
    name="tb-attention",
    version="0.1.0",
    description="A TensorBoard plugin that shows transformer attention changing during training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    # The dashboard lives in frontend/ at the top of the repo and ships inside
    # the package, so TensorBoard serves it offline with no build step.
    packages=[
        "tb_attention",
        "tb_attention.proto",
        "tb_attention.integrations",
        "tb_attention.frontend",
    ],
    package_dir={"tb_attention.frontend": "frontend"},
    package_data={
        "tb_attention.proto": ["*.proto"],
        "tb_attention.frontend": ["*.js", "*.css", "*.html", "LICENSE*", "views/*.js", "draw/*.js", "vendor/**/*"],
    },
    include_package_data=False,
    # No torch pin: users install next to their own torch. capture() imports
    # torch and transformers lazily; the writer, reader and plugin need neither.
    install_requires=[
        "numpy>=1.21",
        "tensorboard>=2.21",
        "protobuf>=6.31.1",
        "google-crc32c>=1.5",
    ],
    extras_require={"torch": ["torch", "transformers>=5"]},
    entry_points={
        "tensorboard_plugins": ["attention = tb_attention.plugin:AttentionPlugin"],
        "console_scripts": ["tb-attention = tb_attention.cli:main"],
    },
)
