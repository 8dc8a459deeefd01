// swift-tools-version:6.2
import PackageDescription

/// libFuzzer targets for the decoders of swift-pbft (see README.md).
///
/// A separate package so the fuzz build (release, `--sanitize fuzzer`, every module
/// instrumented) never mixes with the main package's builds. Build one target with
///
///     swift build -c release --scratch-path .build-fuzz --sanitize fuzzer --product FuzzMessage
///
/// or all of them at once (one `swift build` lets SwiftPM compile BFTCore and swift-nio in
/// parallel). Each fuzz target defines `LLVMFuzzerTestOneInput` and has no `main`: libFuzzer's
/// `main` is linked in by `--sanitize fuzzer`, which also compiles every executable target with
/// `-parse-as-library`. So no ordinary executable may live in this package (its `main` would
/// clash with libFuzzer's): the corpus generator is a package of its own, `MakeCorpus/`.
let package = Package(
    name: "swift-pbft-fuzz",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "FuzzMessage", targets: ["FuzzMessage"]),
        .executable(name: "FuzzRequest", targets: ["FuzzRequest"]),
        .executable(name: "FuzzFrame", targets: ["FuzzFrame"]),
        .executable(name: "FuzzKVCommand", targets: ["FuzzKVCommand"]),
    ],
    dependencies: [
        .package(name: "swift-pbft", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "BFTCore", package: "swift-pbft")]),
        .executableTarget(
            name: "FuzzMessage",
            dependencies: ["FuzzSupport", .product(name: "BFTCore", package: "swift-pbft")]
        ),
        .executableTarget(
            name: "FuzzRequest",
            dependencies: ["FuzzSupport", .product(name: "BFTCore", package: "swift-pbft")]
        ),
        // The node's frame codec and key-value store come from the main package's small
        // modules (BFTFrameCodec: NIOCore only; BFTApplications: BFTCore, BFTStorage, Logging),
        // not from BFTNode, whose NIOPosix, NIOHTTP1 and Prometheus closure these targets never
        // run and would triple the instrumented build.
        .executableTarget(
            name: "FuzzFrame",
            dependencies: [
                "FuzzSupport", .product(name: "BFTFrameCodec", package: "swift-pbft"),
                .product(name: "BFTCore", package: "swift-pbft"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzKVCommand",
            dependencies: ["FuzzSupport", .product(name: "BFTApplications", package: "swift-pbft"),
                           .product(name: "BFTCore", package: "swift-pbft")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
