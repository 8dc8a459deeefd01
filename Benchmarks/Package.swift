// swift-tools-version:6.2
import PackageDescription

/// Micro-benchmarks for swift-pbft with ordo-one/benchmark (figures and how to read them: ../BENCHMARKS.md).
///
/// A separate package so the main package's build and CI never compile the benchmark
/// framework. Run from this folder with
///
///     swift package --allow-writing-to-package-directory benchmark
///
/// The `MallocInterposer` trait gives the malloc counters. Naming it alone also leaves out the
/// framework's Linux Swift 6.3 ARC runtime interposer (its default `RuntimeInterposer` trait,
/// which needs a package that is not available here); only the retain/release metrics need
/// it, and these benchmarks do not use them. The tool then prints a warning about the runtime
/// interposer not being built, which is expected.
let package = Package(
    name: "swift-pbft-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "swift-pbft", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PBFTBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "BFTCore", package: "swift-pbft"),
            ],
            path: "Benchmarks/PBFTBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
