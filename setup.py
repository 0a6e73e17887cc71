"""Packaging for learning_to_simulate (TensorFlow 2 port of arXiv:2002.09405)."""

import os

import setuptools

_HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(filename):
  with open(os.path.join(_HERE, filename)) as f:
    return [line.split("#")[0].strip() for line in f
            if line.split("#")[0].strip()]


setuptools.setup(
    name="learning_to_simulate",
    version="0.1.0",
    description=("Learning to Simulate Complex Physics with Graph Networks "
                 "(Sanchez-Gonzalez et al., ICML 2020), in TensorFlow 2."),
    long_description=open(os.path.join(_HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache 2.0",
    python_requires=">=3.11,<3.14",
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
    packages=setuptools.find_packages(include=["learning_to_simulate",
                                               "learning_to_simulate.*"]),
    package_data={"learning_to_simulate": ["data/*/*", "pretrained/*/*",
                                           "download_dataset.sh"]},
    include_package_data=True,
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "datagen": ["taichi==1.7.4"],
        "test": _requirements("requirements-test.txt"),
    },
)
