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
        // The node's frame codec and key-value store, compiled here from the main package's
        // own source files (symlinks into ../Sources/BFTNode) instead of depending on the
        // BFTNode product: BFTNode pulls in NIOPosix, NIOHTTP1, swift-metrics and
        // swift-prometheus, code these targets never run. Building that closure with fuzzer
        // instrumentation took 6 minutes on a busy 2-core machine, on top of BFTCore; the whole
        // package now builds cold in about 3. Same source bytes, same compiler, same language
        // mode. If one of these files moves, fix the symlink; if it starts to need another
        // BFTNode file, link that one too.
        .target(
            name: "BFTNodeFrameCodec",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "BFTNodeKV",
            dependencies: [.product(name: "BFTCore", package: "swift-pbft")]
        ),
        .executableTarget(
            name: "FuzzFrame",
            dependencies: [
                "FuzzSupport", "BFTNodeFrameCodec",
                .product(name: "BFTCore", package: "swift-pbft"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzKVCommand",
            dependencies: ["FuzzSupport", "BFTNodeKV", .product(name: "BFTCore", package: "swift-pbft")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
