// swift-tools-version:6.2
import PackageDescription

/// Writes the committed seed corpus of the fuzz targets (see ../README.md). A package of its
/// own because the fuzz package is built with `--sanitize fuzzer`, whose libFuzzer `main`
/// clashes with any ordinary executable's.
let package = Package(
    name: "swift-pbft-fuzz-corpus",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "swift-pbft", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "MakeCorpus", dependencies: [.product(name: "BFTCore", package: "swift-pbft")]),
    ],
    swiftLanguageModes: [.v6]
)
