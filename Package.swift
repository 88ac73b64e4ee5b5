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
        .executable(name: "fleetctl", targets: ["fleetctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
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
        .executableTarget(
            name: "fleetctl",
            dependencies: [
                "BitModel", "BitEngine", "ModelImport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "BitModelTests", dependencies: ["BitModel"]),
        .testTarget(name: "BitEngineTests", dependencies: ["BitEngine", "BitModel"]),
        .testTarget(
            name: "ModelImportTests",
            dependencies: ["ModelImport", "BitEngine", "BitModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
