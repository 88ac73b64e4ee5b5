// swift-tools-version:6.1
import PackageDescription

// Dependencies point one way: BitModel (format) <- BitEngine (kernels, executor) <- tools.
// CBitKernels holds the few x86-64 kernels that need per-function target attributes
// (AVX2, AVX-512 VPOPCNTDQ) so the rest of the build stays at the portable baseline and a
// CPU without those features gets the portable Swift kernels instead of SIGILL.
let package = Package(
    name: "BitFleet",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "BitModel", targets: ["BitModel"]),
        .library(name: "BitEngine", targets: ["BitEngine"]),
        .library(name: "ModelImport", targets: ["ModelImport"]),
        .library(name: "FleetKit", targets: ["FleetKit"]),
        .executable(name: "fleetctl", targets: ["fleetctl"]),
        .executable(name: "fleet-controller", targets: ["fleet-controller"]),
        .executable(name: "fleet-agent", targets: ["fleet-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.36.0"),
    ],
    targets: [
        .target(name: "BitModel"),
        .target(
            name: "CBitKernels",
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        .target(name: "BitEngine", dependencies: ["BitModel", "CBitKernels"]),
        // ONNX -> .bnn. Generated/onnx.pb.swift is committed (tools/onnx-proto/regenerate.sh)
        // so builds never run the protoc plugin.
        .target(
            name: "ModelImport",
            dependencies: ["BitModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // What controller, agent and CLI share: API types, signed manifests, aggregates, HTTP client.
        .target(
            name: "FleetKit",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // A small HTTP/1.1 client on SwiftNIO: the controller's pushes, the fleet simulator,
        // and HTTPS to a controller with a private CA (agent and fleetctl `--ca-certificate`).
        .target(
            name: "FleetNIOHTTP",
            dependencies: [
                "FleetKit",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "FleetController",
            dependencies: [
                "FleetKit", "BitModel", "BitEngine", "ModelImport", "FleetNIOHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Controller/Server"
        ),
        .executableTarget(
            name: "fleet-controller",
            dependencies: [
                "FleetController",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Controller/Main"
        ),
        .target(
            name: "FleetAgent",
            dependencies: [
                "FleetKit", "BitModel", "BitEngine", "FleetNIOHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Agent/Core"
        ),
        .executableTarget(
            name: "fleet-agent",
            dependencies: [
                "FleetAgent", "FleetKit", "BitEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Agent/Main"
        ),
        .executableTarget(
            name: "fleetctl",
            dependencies: [
                "BitModel", "BitEngine", "ModelImport", "FleetKit", "FleetNIOHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The scale benchmark: many simulated devices (real protocol, real HTTP) against a
        // real controller. Not a test: docs/BENCHMARKS.md has the commands and figures.
        .executableTarget(
            name: "fleet-sim",
            dependencies: [
                "FleetKit", "BitModel", "FleetNIOHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            path: "benchmarks/FleetSimulator"
        ),
        .testTarget(name: "BitModelTests", dependencies: ["BitModel"]),
        .testTarget(name: "BitEngineTests", dependencies: ["BitEngine", "BitModel"]),
        .testTarget(name: "FleetKitTests", dependencies: ["FleetKit", "BitModel", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "ControllerTests",
            dependencies: ["FleetController", "FleetKit", "BitModel", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "FleetTests",
            dependencies: [
                // FleetAgent: library-level agent tests (an injected clock) next to the process tests.
                "FleetKit", "BitModel", "BitEngine", "FleetAgent", "FleetNIOHTTP", "fleet-controller", "fleet-agent", "fleetctl",
                .product(name: "Crypto", package: "swift-crypto"),
                // TLS handshakes driven directly (TLSTests).
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // Peer addresses for the agent's loopback-only check (AgentLocalOnlyTests).
                .product(name: "NIOCore", package: "swift-nio"),
                // Read-only PRAGMA integrity_check of a killed controller's database.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ModelImportTests",
            dependencies: ["ModelImport", "BitEngine", "BitModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
