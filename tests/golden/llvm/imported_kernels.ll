; kernel center
; ModuleID = 'mlp.center'
source_filename = "mlp.center"

; Function Attrs: nounwind
define i32 @mlp_call(ptr %0, ptr %1) #0 {
entry:
  %2 = alloca i32, align 4
  store i32 0, ptr %2, align 4
  %3 = getelementptr inbounds i64, ptr %0, i64 0
  %4 = load double, ptr %3, align 8
  %5 = fptrunc double %4 to float
  %6 = call float @kernel.center(float %5, ptr %2)
  %7 = fpext float %6 to double
  store double %7, ptr %1, align 8
  %8 = load i32, ptr %2, align 4
  ret i32 %8
}

; Function Attrs: nounwind willreturn
define internal float @kernel.center(float %0, ptr nocapture %1) #1 {
entry:
  %2 = fsub float %0, 5.000000e-01
  ret float %2
}

; Function Attrs: nounwind
define i32 @mlp_map(ptr %0, ptr noalias %1, i64 %2) #0 {
entry:
  %3 = alloca i32, align 4
  %4 = alloca i32, align 4
  store i32 0, ptr %4, align 4
  %5 = getelementptr inbounds ptr, ptr %0, i64 0
  %6 = load ptr, ptr %5, align 8
  %7 = icmp sgt i64 %2, 0
  br i1 %7, label %loop, label %done

loop:                                             ; preds = %loop, %entry
  %i = phi i64 [ 0, %entry ], [ %15, %loop ]
  store i32 0, ptr %3, align 4
  %8 = getelementptr inbounds float, ptr %6, i64 %i
  %9 = load float, ptr %8, align 4
  %10 = call float @kernel.center(float %9, ptr %3)
  %11 = getelementptr inbounds float, ptr %1, i64 %i
  store float %10, ptr %11, align 4
  %12 = load i32, ptr %3, align 4
  %13 = load i32, ptr %4, align 4
  %14 = or i32 %13, %12
  store i32 %14, ptr %4, align 4
  %15 = add nuw nsw i64 %i, 1
  %16 = icmp slt i64 %15, %2
  br i1 %16, label %loop, label %done

done:                                             ; preds = %loop, %entry
  %17 = load i32, ptr %4, align 4
  ret i32 %17
}

attributes #0 = { nounwind }
attributes #1 = { nounwind willreturn }
; kernel normalize_pixel
; ModuleID = 'mlp.normalize_pixel'
source_filename = "mlp.normalize_pixel"

; Function Attrs: nounwind
define i32 @mlp_call(ptr %0, ptr %1) #0 {
entry:
  %2 = alloca i32, align 4
  store i32 0, ptr %2, align 4
  %3 = getelementptr inbounds i64, ptr %0, i64 0
  %4 = load double, ptr %3, align 8
  %5 = fptrunc double %4 to float
  %6 = call float @kernel.normalize_pixel(float %5, ptr %2)
  %7 = fpext float %6 to double
  store double %7, ptr %1, align 8
  %8 = load i32, ptr %2, align 4
  ret i32 %8
}

; Function Attrs: nounwind willreturn
define internal float @kernel.normalize_pixel(float %0, ptr nocapture %1) #1 {
entry:
  %2 = fdiv float %0, 2.550000e+02
  %3 = call float @kernel.center(float %2, ptr %1)
  ret float %3
}

; Function Attrs: nounwind
define i32 @mlp_map(ptr %0, ptr noalias %1, i64 %2) #0 {
entry:
  %3 = alloca i32, align 4
  %4 = alloca i32, align 4
  store i32 0, ptr %4, align 4
  %5 = getelementptr inbounds ptr, ptr %0, i64 0
  %6 = load ptr, ptr %5, align 8
  %7 = icmp sgt i64 %2, 0
  br i1 %7, label %loop, label %done

loop:                                             ; preds = %loop, %entry
  %i = phi i64 [ 0, %entry ], [ %15, %loop ]
  store i32 0, ptr %3, align 4
  %8 = getelementptr inbounds float, ptr %6, i64 %i
  %9 = load float, ptr %8, align 4
  %10 = call float @kernel.normalize_pixel(float %9, ptr %3)
  %11 = getelementptr inbounds float, ptr %1, i64 %i
  store float %10, ptr %11, align 4
  %12 = load i32, ptr %3, align 4
  %13 = load i32, ptr %4, align 4
  %14 = or i32 %13, %12
  store i32 %14, ptr %4, align 4
  %15 = add nuw nsw i64 %i, 1
  %16 = icmp slt i64 %15, %2
  br i1 %16, label %loop, label %done

done:                                             ; preds = %loop, %entry
  %17 = load i32, ptr %4, align 4
  ret i32 %17
}

; Function Attrs: nounwind willreturn
define internal float @kernel.center(float %0, ptr nocapture %1) #1 {
entry:
  %2 = fsub float %0, 5.000000e-01
  ret float %2
}

attributes #0 = { nounwind }
attributes #1 = { nounwind willreturn }
; kernel m.is_small
; ModuleID = 'mlp.m.is_small'
source_filename = "mlp.m.is_small"

; Function Attrs: nounwind
define i32 @mlp_call(ptr %0, ptr %1) #0 {
entry:
  %2 = alloca i32, align 4
  store i32 0, ptr %2, align 4
  %3 = getelementptr inbounds i64, ptr %0, i64 0
  %4 = load double, ptr %3, align 8
  %5 = fptrunc double %4 to float
  %6 = call i1 @kernel.m.is_small(float %5, ptr %2)
  %7 = zext i1 %6 to i64
  store i64 %7, ptr %1, align 4
  %8 = load i32, ptr %2, align 4
  ret i32 %8
}

; Function Attrs: nounwind willreturn
define internal i1 @kernel.m.is_small(float %0, ptr nocapture %1) #1 {
entry:
  %2 = call float @llvm.fabs.f32(float %0)
  %3 = fcmp olt float %2, 1.000000e+01
  ret i1 %3
}

; Function Attrs: nounwind
define i32 @mlp_map(ptr %0, ptr noalias %1, i64 %2) #0 {
entry:
  %3 = alloca i32, align 4
  %4 = alloca i32, align 4
  store i32 0, ptr %4, align 4
  %5 = getelementptr inbounds ptr, ptr %0, i64 0
  %6 = load ptr, ptr %5, align 8
  %7 = icmp sgt i64 %2, 0
  br i1 %7, label %loop, label %done

loop:                                             ; preds = %loop, %entry
  %i = phi i64 [ 0, %entry ], [ %16, %loop ]
  store i32 0, ptr %3, align 4
  %8 = getelementptr inbounds float, ptr %6, i64 %i
  %9 = load float, ptr %8, align 4
  %10 = call i1 @kernel.m.is_small(float %9, ptr %3)
  %11 = zext i1 %10 to i8
  %12 = getelementptr inbounds i8, ptr %1, i64 %i
  store i8 %11, ptr %12, align 1
  %13 = load i32, ptr %3, align 4
  %14 = load i32, ptr %4, align 4
  %15 = or i32 %14, %13
  store i32 %15, ptr %4, align 4
  %16 = add nuw nsw i64 %i, 1
  %17 = icmp slt i64 %16, %2
  br i1 %17, label %loop, label %done

done:                                             ; preds = %loop, %entry
  %18 = load i32, ptr %4, align 4
  ret i32 %18
}

; Function Attrs: nocallback nofree nosync nounwind speculatable willreturn memory(none)
declare float @llvm.fabs.f32(float) #2

attributes #0 = { nounwind }
attributes #1 = { nounwind willreturn }
attributes #2 = { nocallback nofree nosync nounwind speculatable willreturn memory(none) }
; kernel m.clamp01
; ModuleID = 'mlp.m.clamp01'
source_filename = "mlp.m.clamp01"

; Function Attrs: nounwind
define i32 @mlp_call(ptr %0, ptr %1) #0 {
entry:
  %2 = alloca i32, align 4
  store i32 0, ptr %2, align 4
  %3 = getelementptr inbounds i64, ptr %0, i64 0
  %4 = load double, ptr %3, align 8
  %5 = fptrunc double %4 to float
  %6 = call float @kernel.m.clamp01(float %5, ptr %2)
  %7 = fpext float %6 to double
  store double %7, ptr %1, align 8
  %8 = load i32, ptr %2, align 4
  ret i32 %8
}

; Function Attrs: nounwind willreturn
define internal float @kernel.m.clamp01(float %0, ptr nocapture %1) #1 {
entry:
  %2 = fcmp olt float %0, 0.000000e+00
  %3 = select i1 %2, float 0.000000e+00, float %0
  %4 = fcmp olt float 1.000000e+00, %3
  %5 = select i1 %4, float 1.000000e+00, float %3
  ret float %5
}

; Function Attrs: nounwind
define i32 @mlp_map(ptr %0, ptr noalias %1, i64 %2) #0 {
entry:
  %3 = alloca i32, align 4
  %4 = alloca i32, align 4
  store i32 0, ptr %4, align 4
  %5 = getelementptr inbounds ptr, ptr %0, i64 0
  %6 = load ptr, ptr %5, align 8
  %7 = icmp sgt i64 %2, 0
  br i1 %7, label %loop, label %done

loop:                                             ; preds = %loop, %entry
  %i = phi i64 [ 0, %entry ], [ %15, %loop ]
  store i32 0, ptr %3, align 4
  %8 = getelementptr inbounds float, ptr %6, i64 %i
  %9 = load float, ptr %8, align 4
  %10 = call float @kernel.m.clamp01(float %9, ptr %3)
  %11 = getelementptr inbounds float, ptr %1, i64 %i
  store float %10, ptr %11, align 4
  %12 = load i32, ptr %3, align 4
  %13 = load i32, ptr %4, align 4
  %14 = or i32 %13, %12
  store i32 %14, ptr %4, align 4
  %15 = add nuw nsw i64 %i, 1
  %16 = icmp slt i64 %15, %2
  br i1 %16, label %loop, label %done

done:                                             ; preds = %loop, %entry
  %17 = load i32, ptr %4, align 4
  ret i32 %17
}

attributes #0 = { nounwind }
attributes #1 = { nounwind willreturn }
